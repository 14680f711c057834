"""Ray Tune's ``OptunaSearch`` that marks each configuration it proposes with its proposer
(``sweeps.search``): the sampler, and ``(startup)`` for its first, independently random trials."""

from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch

from reports.record import PROPOSED_BY


class ProposingOptunaSearch(OptunaSearch):
    def __init__(self, *args, proposer: str, startup: int, **kwargs):
        super().__init__(*args, **kwargs)
        self._proposer, self._startup = proposer, startup

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            startup = self._random_start(self._ot_trials[trial_id])
            run = config.setdefault("run", {})
            run[PROPOSED_BY] = self._proposer + (" (startup)" if startup else "")
        return config

    def _random_start(self, trial) -> bool:
        """Whether the sampler drew this trial at random: NSGA-II's first generation (by number); TPE
        until its start-up trials have finished (those not running when this one was asked for)."""
        import optuna

        if isinstance(self._ot_study.sampler, optuna.samplers.NSGAIISampler):
            return trial.number < self._startup
        done = sum(t.state != optuna.trial.TrialState.RUNNING for t in self._ot_study.get_trials(deepcopy=False))
        return done < self._startup
