"""Requests, queues and (later) the virtual devices AUTO, MULTI, HETERO and BATCH."""
