"""The assets layer: the release's precompiled assets, served by nginx."""

from __future__ import annotations

from railsfab.diagnose.base import Context, Finding, Layer


def no_assets(d: dict, ctx: Context) -> Finding | None:
    if not d["asset"]:
        return ("no precompiled assets in current/public/assets "
                "(pages load unstyled: asset requests 404)", precompile(d, ctx, ""))
    return None


def precompile(d: dict, ctx: Context, again: str = " again") -> str:
    """The fix that compiles the release's assets on this host, then restarts its server."""
    return (f"fab rails{ctx.only} -- assets:precompile (compiles the release's assets{again}, "
            f"RAILS_ENV={d['rails_env']}), then fab restart-app{ctx.only}")


def missing_asset(d: dict) -> dict | None:
    return (d.get("missing") or {}).get("asset")


def not_in_manifest(d: dict, ctx: Context) -> Finding | None:
    """The app asked for an asset its release's precompiled manifest lacks: compiled again
    when the release has its source; the app's own reference when it has none."""
    a = missing_asset(d)
    if a is None:
        return None
    code = d["http"]["root"]["code"]
    said = (f"/ answers {code}: The asset \"{a['asset']}\" is not present in the asset "
            f"pipeline: {a['manifest'] or 'no manifest'} in current/public/assets lacks it")
    if a["sources"]:
        return f"{said}, though the release has {', '.join(a['sources'])}", precompile(d, ctx)
    return (f"{said}, and no file of the release's app/assets, lib/assets or vendor/assets "
            "is its source", f"the app asks for {a['asset']}, which it does not have: add it "
            "to app/assets (or fix the reference), then fab deploy")


def asset_not_served(d: dict, ctx: Context) -> Finding | None:
    code = d["http"]["asset"]["code"]
    if code != "200":
        return (f"{d['asset']} answers {code}",
                "nginx's /assets location must serve current/public/assets")
    return None


def not_the_fleets_assets(d: dict, ctx: Context) -> Finding | None:
    """Same assets as the fleet: behind the ALB a page from this host asks another for
    the fingerprinted files its own manifest names (railsfab.diagnose.fleet)."""
    f = ctx.fleet
    if f and f["status"] == "FAIL":
        return f["detail"], f["fix"]
    return None


class Assets(Layer):
    name = "assets"
    checks = (no_assets, not_in_manifest, asset_not_served, not_the_fleets_assets)

    def applies(self, ctx):
        return ctx.pipeline

    def skip_reason(self, ctx):
        return "the app has no asset pipeline (nothing is precompiled)"

    def healthy(self, d, ctx):
        return f"{d['asset']} 200" + (f"; {ctx.fleet['detail']}" if ctx.fleet else "")
