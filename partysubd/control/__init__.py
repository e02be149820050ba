"""The control plane: the operators' JSON API, Prometheus metrics and the dashboard."""
