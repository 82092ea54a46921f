"""On-demand diagnostics of the running agent: CPU profiles, task and thread dumps, heap tops.

Only the HTTP routes in agent.profiling.web expose them, and only with debug.enabled.
"""
