"""The process around the agent: systemd notify and watchdog, the health server, Prometheus metrics,
kube-state-metrics series and container logs.
"""
