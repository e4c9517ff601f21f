"""railsfab's task collection: `fab --list` shows every task."""

from invoke import Collection

from tasks import sandbox

ns = Collection()
ns.add_collection(sandbox.ns)
