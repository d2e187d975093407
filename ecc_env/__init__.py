"""Gymnasium environment for edge-cloud split and redundancy-skip decisions.

Importing the package registers ``"ecc_env/EdgeCloudSplit-v0"`` by string entry point; the env module itself is
imported only when the env is made.
"""

from gymnasium.envs.registration import register, registry

ENV_ID = "ecc_env/EdgeCloudSplit-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="ecc_env.split_env:EdgeCloudSplitEnv")

__all__ = ["ENV_ID"]
