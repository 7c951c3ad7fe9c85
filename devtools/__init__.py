"""Development tools, not part of the runtime: the embedded PostgreSQL/Valkey wrapper and
the ``pizzeria up`` launcher (one command runs the whole shop on a fresh machine), and the
``pizzeria bench`` benchmark. The production image carries neither this package nor the
``embedded`` dependency group."""
