"""railsfab's task collection: `fab --list` shows every task."""

from invoke import Collection

from tasks import aws, check, deploy, diagram, lock, releases, restart, sandbox

ns = Collection()
ns.add_task(deploy.deploy)
ns.add_task(check.check)
ns.add_task(restart.restart_app)
ns.add_task(restart.restart_unicorn)
ns.add_task(releases.releases)
ns.add_task(releases.rollback)
ns.add_task(diagram.diagram)
ns.add_collection(aws.ns)
ns.add_collection(lock.ns)
ns.add_collection(sandbox.ns)
