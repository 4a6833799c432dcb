"""The `supportflow` command's offline and evaluation commands, one module per service they drive
(`classifier`, `drafter`, `retriever`, `learner`): above the services, so one command may use
several of them in one process."""
