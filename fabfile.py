"""railsfab's task collection: `fab --list` shows every task."""

from invoke import Collection

from tasks import aws, check, deploy, diagram, lock, rails, releases, restart, sandbox

rails.claim_remainder()  # `fab rails -- db:seed`: what follows `--` is the task's

ns = Collection()
ns.add_task(deploy.deploy)
ns.add_task(check.check)
ns.add_task(restart.restart_app)
ns.add_task(restart.restart_unicorn)
ns.add_task(releases.releases)
ns.add_task(releases.rollback)
ns.add_task(rails.rails)
ns.add_task(rails.logs)
ns.add_task(diagram.diagram)
ns.add_collection(aws.ns)
ns.add_collection(lock.ns)
ns.add_collection(sandbox.ns)
