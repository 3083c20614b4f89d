"""The Lambda layer with the third-party packages (requirements.txt), built by layers/build.py."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from aws_cdk import AssetHashType
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from layers import build as layer_build

if TYPE_CHECKING:
    from pathlib import Path

BUILD_COMMAND = ".venv/bin/python layers/build.py"


class LayerBuildError(RuntimeError):
    """The layer is missing or stale and building it failed."""


def ensure_layer_built() -> Path:
    """The built layer directory, building it first when requirements.txt changed (a no-op otherwise)."""
    if layer_build.is_current():
        return layer_build.OUT
    try:
        return layer_build.build()
    except (subprocess.CalledProcessError, OSError) as exc:
        raise LayerBuildError(
            f"The Lambda layer in {layer_build.OUT} is missing or stale and building it failed ({exc}). "
            f"Run `{BUILD_COMMAND}` and read its output (it needs PyPI)."
        ) from exc


class DependenciesLayer(Construct):
    """pyarrow, the ADBC and psycopg drivers, pydantic and Powertools, for Python 3.12 on x86_64."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        out = ensure_layer_built()
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            description="dbexport's third-party packages (requirements.txt), built by layers/build.py",
            code=lambda_.Code.from_asset(
                str(out),
                exclude=[layer_build.STAMP_NAME],
                # The stamp is the hash of requirements.txt and the build script, which decide the content:
                # hashing 170 MB on every synth would only take time.
                asset_hash=layer_build.requirements_key(),
                asset_hash_type=AssetHashType.CUSTOM,
            ),
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
            compatible_architectures=[lambda_.Architecture.X86_64],
        )
