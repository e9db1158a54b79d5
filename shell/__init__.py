"""The application shell: the `lineage` CLI, the local stack, benchmarks and the demo scenario.

The only layer that wires processes together: it builds the sink service and the stream worker
from `sinks`, `stream_apps` and `producers`, which never import each other.
"""
