"""Several daemons as one: the link to Redis (coredis), on the I/O edge."""
