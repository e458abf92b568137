"""Simulated TRL 1.16 training logs: the healthy and failure corpus of tests/data/corpus/.

tools/make_corpus.py writes it; the modules here hold the parts:

- schedules.py  the time axis: learning-rate schedules (warm-up, cosine/linear decay), logged
                steps, epochs, and the learning progress that drives every curve;
- noise.py      seeded noise: Gaussian, smooth wander, heavy-tailed multipliers, honest spikes;
- sim.py        one run being simulated: a value per optimizer step for each key, reduced
                to the rows TRL logs (window means, last values, cumulative counters);
- pairs.py      preference pairs (DPO, KTO, reward models, CPO/ORPO/TPO, online DPO);
- groups.py     groups of sampled completions (GRPO, RLOO, GMPO, async GRPO, SDPO, ...);
- curves.py     shared shapes: curves that follow learning, gradient norms, token counters;
- supervised.py, preference.py, online_rl.py, distill.py, async_keys.py
                the healthy model of each TRL 1.16 trainer, with its real key names
                (checked against /work/scratch/trl116/inventory.yaml, read from the TRL 1.16 source);
- trainers.py   every trainer id: its model, config class and TRL 1.16 config defaults;
- failures.py   the failures, injected into a healthy run from an onset step;
- runs.py       a scenario (trainer, schedule, configuration, failure) and its simulation;
- scenarios.py  the table of every run in the corpus (and the rule writers' `expect_rules`);
- output.py     the run folders (diagnostics/metrics.jsonl + diagnostics/run.json) and the manifest.

Nothing here imports trl, torch or ruledsl: numpy and PyYAML only.
"""
