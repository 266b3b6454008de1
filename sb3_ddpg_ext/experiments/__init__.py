"""Optional tooling around DDPGExt: hyperparameter files, tuning, benchmarks."""
