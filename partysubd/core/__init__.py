"""The sans-I/O core: protocol, rooms, policies and plans.

Pure code that takes events, bytes and the time and returns frames and
decisions. It imports no trio, socket, ssl, coredis, hypercorn or time (an
import-linter contract in CI holds it to that), and nothing above it.
"""
