"""latentflow: latent normalizing flows for discrete sequences (Ziegler & Rush, ICML 2019).

Which module owns what:

* ``flows``, ``models``: the core, plain PyTorch (transforms, flow layers, priors,
  conditioners, the VAE, the LSTM baseline); ``protocols``: the contracts between parts;
  ``components``: building ``_target_`` nodes, trusted ones only from checkpoints.
* ``data``: datasets, batching, downloads, datamodules (``latentflow.data`` says which is which).
* ``lightning``: the thin Lightning layer (module, schedules, callbacks, checkpoint I/O).
* ``run``: the Python API (``compose``, ``train``, ``evaluate``, ``sample``, ``load_module``).
  Its parts: ``configs`` (composing), ``schema`` (every setting's type and range),
  ``config_checks`` (every start-up check), ``assembly`` (datamodule, module, Trainer),
  ``resume`` (resume policy), ``loading`` (opening checkpoints), ``rundir`` (the run directory:
  lock, fresh start, atomic JSON), ``hydra_guard`` (checks before Hydra writes anything).
* ``cli``: the command-line layer shared by the tools ``train``, ``evaluate``, ``sample``,
  ``plot_cli`` and ``prepare``; ``sweep``: Optuna studies (``latentflow-sweep``), with
  ``study`` (storage, trial budget, retries), ``search_space``, ``pruning``, ``sweep_report``.
* ``recipes``: the registry of ``experiment=`` recipes; ``conf/``: the Hydra configs.
* ``generation``, ``midi``, ``audio``: what sampling writes (text, MIDI, piano rolls, sound);
  ``plotting``: the paper's figures; ``toy``: the Fig. 5c toy; ``tracking``: loggers;
  ``runtime``: threads, allocator, precision.
"""

__version__ = "0.1.0"
