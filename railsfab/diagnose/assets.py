"""The assets layer: the release's precompiled assets, served by nginx."""

from __future__ import annotations

from railsfab.diagnose.base import Context, Finding, Layer


def no_assets(d: dict, ctx: Context) -> Finding | None:
    if not d["asset"]:
        return ("no precompiled assets in current/public/assets "
                "(pages load unstyled: asset requests 404)",
                "RAILS_ENV=<env> bin/rails assets:precompile in the release (fab deploy does this)")
    return None


def asset_not_served(d: dict, ctx: Context) -> Finding | None:
    code = d["http"]["asset"]["code"]
    if code != "200":
        return (f"{d['asset']} answers {code}",
                "nginx's /assets location must serve current/public/assets")
    return None


class Assets(Layer):
    name = "assets"
    checks = (no_assets, asset_not_served)

    def applies(self, ctx):
        return ctx.pipeline

    def skip_reason(self, ctx):
        return "the app has no asset pipeline (nothing is precompiled)"

    def healthy(self, d, ctx):
        return f"{d['asset']} 200"
