"""Build the JS front end (js/ -> cnnwidgets/static/) whenever a wheel or sdist is built, so `pip install .` works."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class FrontEndBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        js = Path(self.root) / "js"
        built = list((Path(self.root) / "cnnwidgets" / "static").glob("*.js"))
        if not (js / "package.json").exists():
            if not built:
                raise RuntimeError("cnnwidgets/static has no built JS and js/ is missing; build from a git checkout")
            return  # an sdist: the front end was built when the sdist was made
        npm = shutil.which("npm")
        if npm is None:
            if built:
                return
            raise RuntimeError("building cnnwidgets needs Node.js and npm to bundle the front end in js/; install them")
        if not (js / "node_modules").exists():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=js, check=True)
        subprocess.run([npm, "run", "build"], cwd=js, check=True)
