"""fab check compares the web hosts' precompiled assets (railsfab/diagnose/fleet.py): behind
the ALB a page from one host asks another for its fingerprinted files, so every host must
serve the same manifest; the hosts in the minority fail the assets layer."""

from __future__ import annotations

import copy

from railsfab.diagnose import evaluate, first_broken, same_assets
from tests.unit.test_diagnose_evidence import HEALTHY, MODES, PATHS

A, B, C = "a" * 64, "b" * 64, "c" * 64
R1, R2 = "20261206110556", "20261207090000"


def doc(sha: str | None, release: str = R1, files: int = 42) -> dict:
    """A healthy probe whose current release serves the manifest `sha` (None: no manifest)."""
    d = copy.deepcopy(HEALTHY)
    d["release"].update(link=f"/srv/sample/releases/{release}",
                        target=f"/srv/sample/releases/{release}")
    d["release"]["manifest"] = None if sha is None else {
        "name": "public/assets/.sprockets-manifest-0a1b.json", "sha256": sha, "files": files}
    return d


def judged(docs: dict[str, dict], stage: str = "prod") -> dict[str, list]:
    fleet = same_assets(docs, stage)
    return {h: evaluate(d, workers=2, app_user="deploy", paths=PATHS, host=h, modes=MODES,
                        fleet=fleet[h]) for h, d in docs.items()}


def assets(verdicts: list):
    return next(v for v in verdicts if v.layer == "assets")


def test_two_hosts_serving_the_same_manifest_pass_with_one_line():
    results = judged({"web1": doc(A), "web2": doc(A)})
    for vs in results.values():
        assert first_broken(vs) is None
        assert assets(vs).status == "ok"
        assert assets(vs).detail.endswith("; same assets on 2 hosts: aaaaaaaaaaaa")


def test_the_odd_host_of_one_release_precompiled_separately_fails_with_a_new_release_fix():
    results = judged({"web1": doc(A), "web2": doc(B, files=41), "web3": doc(A)})
    cause = first_broken(results["web2"])
    assert (cause.layer, cause.role) == ("assets", "cause")
    assert cause.detail == (
        f"web2 serves assets manifest bbbbbbbbbbbb (41 files, release {R1}), web1, web3 serve "
        f"aaaaaaaaaaaa (42 files, release {R1}): release {R1} was precompiled on each host "
        "separately (by hand or by an older railsfab)")
    assert cause.fix == ("deploy a new release with fab deploy --stage prod: it is built once "
                         "and every host receives the same files")
    for host in ("web1", "web3"):
        assert first_broken(results[host]) is None
        assert assets(results[host]).detail.endswith(
            f"; assets aaaaaaaaaaaa, as on {'web3' if host == 'web1' else 'web1'}; web2 differs")


def test_hosts_on_different_releases_are_put_on_one():
    results = judged({"web1": doc(A, R2), "web2": doc(B, R1), "web3": doc(A, R2)}, "staging")
    cause = first_broken(results["web2"])
    assert cause.detail == (
        f"web2 serves assets manifest bbbbbbbbbbbb (42 files, release {R1}), web1, web3 serve "
        f"aaaaaaaaaaaa (42 files, release {R2}): the hosts run different releases")
    assert cause.fix == "fab deploy --stage staging (puts every host on one release)"


def test_one_host_checked_is_not_compared():
    (vs,) = judged({"web1": doc(A)}).values()
    assert first_broken(vs) is None
    assert assets(vs).detail.endswith("; assets not compared (one host)")


def test_a_host_without_a_manifest_is_left_out_of_the_comparison():
    fleet = same_assets({"web1": doc(A), "web2": doc(None), "web3": doc(A)}, "prod")
    assert fleet["web2"] == {"status": "ok", "detail": "assets not compared (no manifest)",
                             "fix": ""}
    assert fleet["web1"]["detail"] == "same assets on 2 hosts: aaaaaaaaaaaa (web2: no manifest)"
    unread = doc(None)
    unread["release"]["manifest"] = {"name": "public/assets/.manifest.json", "sha256": None,
                                     "files": None, "error": "[Errno 40] Too many levels"}
    assert same_assets({"web1": doc(A), "web2": unread}, "prod")["web2"]["detail"] == \
        "assets not compared (its manifest was not read: [Errno 40] Too many levels)"
    alone = same_assets({"web1": doc(A), "web2": doc(None)}, "prod")
    assert alone["web1"]["detail"] == "assets not compared (no other host has a manifest)"


def test_a_tie_keeps_the_first_hosts_manifest():
    two = same_assets({"web1": doc(A), "web2": doc(B)}, "prod")
    assert (two["web1"]["status"], two["web2"]["status"]) == ("ok", "FAIL")
    assert two["web1"]["detail"] == "assets aaaaaaaaaaaa; web2 differs"
    assert two["web2"]["detail"].startswith(
        f"web2 serves assets manifest bbbbbbbbbbbb (42 files, release {R1}), web1 serves "
        "aaaaaaaaaaaa")
    four = same_assets({"web1": doc(B), "web2": doc(A), "web3": doc(A), "web4": doc(B)},
                       "prod")
    assert [h for h, f in four.items() if f["status"] == "FAIL"] == ["web2", "web3"]
    # the majority wins over the first host's
    most = same_assets({"web1": doc(C), "web2": doc(A), "web3": doc(A)}, "prod")
    assert [h for h, f in most.items() if f["status"] == "FAIL"] == ["web1"]


def test_values_read_from_the_host_are_taken_only_in_their_shape():
    """The release and its manifest are the deploy user's: a digest or a release id of
    another shape is no evidence (it would reach the report and a fix)."""
    forged = doc("x; rm -rf / " + "a" * 52)
    assert same_assets({"web1": doc(A), "web2": forged}, "prod")["web2"]["detail"] == \
        "assets not compared (no manifest)"
    odd = doc(B, files=True)
    odd["release"]["target"] = "/srv/sample/releases/$(id)"
    finding = same_assets({"web1": doc(A), "web2": odd}, "prod")["web2"]
    assert "bbbbbbbbbbbb (release unknown)" in finding["detail"]
    assert "$(id)" not in finding["detail"] and "different releases" not in finding["detail"]
    assert finding["fix"] == "fab deploy --stage prod (puts every host on one release)"


def test_a_host_not_compared_keeps_its_verdict_as_before():
    vs = evaluate(doc(A), workers=2, app_user="deploy", paths=PATHS, host="web1", modes=MODES)
    assert assets(vs).detail == f"{HEALTHY['asset']} 200"


def test_the_fix_names_no_host_or_path_its_evidence_does_not():
    from tests.unit.test_fix_property import HOST, PATH

    for docs in ({"web1": doc(A), "web2": doc(B), "web3": doc(A)},
                 {"web1": doc(A, R2), "web2": doc(B, R1)}):
        f = same_assets(docs, "prod")["web2"]
        assert f["status"] == "FAIL"
        assert not PATH.findall(f["fix"]) and not HOST.findall(f["fix"]), f["fix"]
