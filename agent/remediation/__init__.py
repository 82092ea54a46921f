"""Self-healing: rules that notice a condition on this host or an SSH target and run tiered,
rate-limited recovery actions, escalating to Alertmanager when they fail."""
