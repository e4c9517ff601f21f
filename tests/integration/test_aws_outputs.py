"""The stack's outputs and the ALB's health check, against the sandbox's moto server: a
changed health path reaches the target group (by provision, or by the next deploy), a stack
that lost its outputs (or does not exist) stops deploy and check in one line, never runs
without the ALB."""

from __future__ import annotations

import json
import re
import subprocess

from railsfab import outputs, stack
from tests.conftest import run_fab
from tests.integration.test_aws import flat


def tg_of(clients, inv) -> dict:
    name = stack.names(inv)["target_group"]
    return next(t for t in clients.elbv2.describe_target_groups()["TargetGroups"]
                if t["TargetGroupName"] == name)


def lb_verdicts(stage_file) -> dict[str, dict]:
    r = run_fab(stage_file, "check", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    return {h: next(v for v in vs if v["layer"] == "load balancer")
            for h, vs in json.loads(r.stdout).items()}


def test_changed_health_path_then_provision_keeps_the_outputs_and_the_alb(
        provisioned, stages, stage_file, clients, inv):
    """moto's engine drops a target group whose properties change from the stack, and the
    TargetGroupArn output with it: provision must leave every output in place and the
    target group asking the new path; deploy and check still go through the ALB."""
    changed = stages.variant("hosts-health.yaml",
                             lambda st: st["app"].update(health_path="/photos"))
    try:
        r = run_fab(changed, "aws.provision")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Traceback" not in r.stdout + r.stderr
        assert re.search(r"aws\s+changed\s+target group\s.*health check /photos \(was /up\)",
                         r.stdout), r.stdout
        st = clients.cloudformation.describe_stacks(StackName=inv.stage.aws.stack_name)
        have = {o["OutputKey"] for o in st["Stacks"][0]["Outputs"]}
        assert set(outputs.declared_outputs(stack.template(inv))) <= have, have
        assert tg_of(clients, inv)["HealthCheckPath"] == "/photos"
        assert tg_of(clients, inv)["TargetGroupArn"] == stack.outputs(inv)["TargetGroupArn"]
        d = run_fab(changed, "deploy")
        assert d.returncode == 0, d.stdout + d.stderr
        assert re.search(r"aws\s+ok\s+health check\s.*asks /photos", d.stdout), d.stdout
        assert len(re.findall(r"^\s+web\d\s+ok\s+target\s.*healthy in the target group",
                              d.stdout, re.M)) == 2, d.stdout
        for host, v in lb_verdicts(changed).items():
            assert (v["status"], "healthy" in v["detail"]) == ("ok", True), (host, v)
    finally:
        back = run_fab(stage_file, "aws.provision")
    assert back.returncode == 0, back.stdout + back.stderr
    assert tg_of(clients, inv)["HealthCheckPath"] == "/up"


def test_deploy_sets_a_health_path_changed_since_provision_once(provisioned, stages,
                                                                  stage_file, clients, inv):
    changed = stages.variant("hosts-health.yaml",
                             lambda st: st["app"].update(health_path="/photos"))
    try:
        d = run_fab(changed, "deploy")
        assert d.returncode == 0, d.stdout + d.stderr
        assert re.search(r"aws\s+changed\s+health check\s.*asks /photos \(was /up\)",
                         d.stdout), d.stdout
        assert tg_of(clients, inv)["HealthCheckPath"] == "/photos"
        again = run_fab(changed, "deploy")
        assert again.returncode == 0 and "0 changed" in again.stdout, again.stdout
    finally:
        back = run_fab(stage_file, "deploy")
    assert back.returncode == 0, back.stdout + back.stderr
    assert re.search(r"aws\s+changed\s+health check\s.*asks /up \(was /photos\)",
                     back.stdout), back.stdout
    assert tg_of(clients, inv)["HealthCheckPath"] == "/up"


def serving(sandbox, inv) -> dict[str, tuple[str, str]]:
    """Each web host's current release and unicorn master pid."""
    pids = f"{inv.stage.app.deploy_to}/shared/tmp/pids/unicorn.pid"
    said = {}
    for h in inv.hosts(role="web"):
        r = subprocess.run(["ssh", "-F", str(sandbox.ssh_config), "-o", "BatchMode=yes", h.name,
                            f"readlink {inv.stage.app.deploy_to}/current; sudo cat {pids}"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        said[h.name] = tuple(r.stdout.split())
    return said


def strip_outputs(clients, inv) -> None:
    """The stage's stack updated with a template that keeps every resource and declares
    one output only (as a hand edit, or another tool, could leave it)."""
    body = stack.template(inv).partition("\nOutputs:\n")[0]
    body += "\nOutputs:\n  AlbDnsName: {Value: !GetAtt LoadBalancer.DNSName}\n"
    name = inv.stage.aws.stack_name
    cf = clients.cloudformation
    cf.update_stack(StackName=name, TemplateBody=body, Capabilities=["CAPABILITY_IAM"],
                    Parameters=[{"ParameterKey": p["ParameterKey"], "UsePreviousValue": True}
                                for p in stack.describe(cf, name)["Parameters"]])
    assert list(stack.outputs(inv)) == ["AlbDnsName"]


def test_a_stack_without_its_outputs_stops_deploy_and_check_in_one_line(
        provisioned, stage_file, clients, inv, sandbox):
    name = inv.stage.aws.stack_name
    served = serving(sandbox, inv)
    strip_outputs(clients, inv)
    line = (f"stack {name} (UPDATE_COMPLETE) lacks outputs TargetGroupArn (the ALB's target "
            "group), AppSecurityGroupId (the app hosts' security group), AlbSecurityGroupId "
            "(the ALB's security group), InstanceProfileArn (the hosts' instance profile): "
            f"run `fab aws.provision --stage {inv.stage_name}`")
    try:
        d = run_fab(stage_file, "deploy")
        assert d.returncode == 1, d.stdout + d.stderr
        assert line in flat(d.stdout) and "step stack" in d.stdout, d.stdout
        assert "current unchanged" in flat(d.stdout), d.stdout
        # stopped before anything changed on a host: no step past the facts ran
        assert not re.search(r"^\s+web\d\s+\w+\s+(?!facts\b)\w", d.stdout, re.M), d.stdout
        assert "Traceback" not in d.stdout + d.stderr
        r = run_fab(stage_file, "restart-app")  # rollback opens its hosts the same way
        assert r.returncode == 1 and line in flat(r.stdout), r.stdout + r.stderr
        c = run_fab(stage_file, "check")
        assert c.returncode == 1, c.stdout + c.stderr
        assert line in flat(c.stdout) and "no target group" not in c.stdout, c.stdout
        s = run_fab(stage_file, "aws.status")
        assert s.returncode == 1, s.stdout + s.stderr
        assert line in flat(s.stdout), s.stdout
        assert "Invalid type" not in s.stdout and "credentials" not in s.stdout, s.stdout
    finally:
        p = run_fab(stage_file, "aws.provision")
    assert p.returncode == 0, p.stdout + p.stderr
    have = set(stack.outputs(inv))
    assert set(outputs.declared_outputs(stack.template(inv))) <= have, have
    assert run_fab(stage_file, "check").returncode == 0
    assert serving(sandbox, inv) == served  # the same release, the same master


def test_a_stage_whose_stack_does_not_exist_fails_deploy_and_check(provisioned, stages):
    missing = stages.variant("hosts-nostack.yaml",
                             lambda st: st["aws"].update(stack_name="itest-never-made"))
    for cmd in ("deploy", "check", "aws.status"):
        r = run_fab(missing, cmd)
        assert r.returncode == 1, (cmd, r.stdout + r.stderr)
        assert ("stack itest-never-made (aws.stack_name of stage itest) does not exist in "
                in flat(r.stdout)), (cmd, r.stdout)
        assert "fab aws.provision --stage itest" in r.stdout, (cmd, r.stdout)


# --- the S3 endpoint, security groups, instance profile ----------------------------------
