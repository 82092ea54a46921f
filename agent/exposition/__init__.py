"""The exposition: families in, bytes out. Formats, negotiation, encoding cache, the clash and
merge policy, the agent's own families, gzip, and the one function that writes a response."""
