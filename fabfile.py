"""railsfab's task collection: `fab --list` shows every task."""

from invoke import Collection

from tasks import deploy, sandbox

ns = Collection()
ns.add_task(deploy.deploy)
ns.add_collection(sandbox.ns)
