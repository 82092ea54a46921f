"""Push: Prometheus remote write 1.0 from the registry's families, through a durable on-disk
queue per endpoint. Importing this package loads nothing: the configuration model imports
`settings` alone."""
