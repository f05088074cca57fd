"""The Train tab: a form over TrainConfig, the run queue, live loss and samples, run history."""
