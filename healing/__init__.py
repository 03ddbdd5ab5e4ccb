"""Self-healing: detectors over heartbeats and events, and the safety policy (pure).

:mod:`healing.detectors` diagnoses one worker; :mod:`healing.policy` decides whether a
diagnosis may become an action (cooldowns, rate limits, fleet budget, dry-run,
expiry); :mod:`healing.fleet` runs every detector over the fleet (the API's diagnose).
"""

from healing.detectors import Beat, DetectorConfig, Diagnosis, diagnose
from healing.fleet import beats_by_worker, diagnose_fleet
from healing.policy import Decision, HealingPolicy, PolicyConfig

__all__ = [
    "Beat",
    "Decision",
    "DetectorConfig",
    "Diagnosis",
    "HealingPolicy",
    "PolicyConfig",
    "beats_by_worker",
    "diagnose",
    "diagnose_fleet",
]
