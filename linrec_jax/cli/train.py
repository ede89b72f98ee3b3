r"""linrec-train: trains and evaluates a sequential recommender, then tests it.

  linrec-train --dataset=ml-1m --model=sasrec --attention=linrec \
      --workdir=runs/ml1m_linrec
  linrec-train --preset=official --config.lr=3e-4 --workdir=runs/b
  linrec-train --flagfile=examples/ml-1m_sasrec_linrec.flags

Rerunning the same command with the same --workdir resumes from the newest
intact checkpoint; a rerun with other values of flags that change the result
stops before any work (see `linrec_jax.training.run_binding.RESUMABLE_CHANGES` for
those that may change). Every error a user can cause ends as one line and
exit 1. `python -m experiments.train` runs the same program.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from linrec_jax.cli import config_flags
from linrec_jax.cli import failures

flags.DEFINE_string(
    "workdir",
    None,
    "Where checkpoints, logs, console.log and results.json "
    "go (required); rerunning with the same workdir resumes the run.",
)
flags.DEFINE_string(
    "data_root",
    None,
    "Where the raw datasets lie (default: "
    "$LINREC_DATA_DIR, else ../shared/data).",
)
flags.DEFINE_string(
    "prepared_root",
    "prepared",
    "Prepared arrays are cached here, one directory per dataset.",
)
flags.DEFINE_string(
    "coordinator_address",
    None,
    "Several hosts: host:port of process 0 (jax.distributed.initialize).",
)
flags.DEFINE_integer(
    "num_processes", None, "Several hosts: the number of processes."
)
flags.DEFINE_integer("process_id", None, "Several hosts: this process's index.")
config_flags.define_flags()
FLAGS = flags.FLAGS
RUN_FLAGS = (
    "workdir",
    "data_root",
    "prepared_root",
    "coordinator_address",
    "num_processes",
    "process_id",
)
_HELP_ARGS = ("--help", "-help", "-h", "--helpshort", "-helpshort", "-?")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  with failures.user_errors():
    config = config_flags.config_from_flags()
  if FLAGS.workdir is None:
    sys.exit(
        "error: --workdir: required: the directory for checkpoints, "
        "logs and results"
    )
  failures.require_path("workdir", FLAGS.workdir)
  # JAX starts only now: --help and bad values answer in a fraction of a
  # second.
  import jax  # pylint: disable=import-outside-toplevel
  from data_prep import datasets  # pylint: disable=import-outside-toplevel
  from linrec_jax.training import checkpointing  # pylint: disable=import-outside-toplevel
  from linrec_jax.training import sharding  # pylint: disable=import-outside-toplevel
  from linrec_jax.training import train  # pylint: disable=import-outside-toplevel

  # Orbax logs the failures it raises, tracebacks included; they are
  # reported as one line.
  logging.set_verbosity(logging.FATAL)
  checkpointing.quiet_failed_read_noise()
  if FLAGS.coordinator_address:
    jax.distributed.initialize(
        FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id
    )
  with failures.user_errors():
    devices = sharding.select_devices(config.devices)
    sharding.check_divisible(config.batch_size, len(devices), "batch_size")
    sharding.check_divisible(
        config.eval_batch_size, len(devices), "eval_batch_size"
    )
    data_dir = datasets.prepared_dir(
        FLAGS.dataset, FLAGS.data_root, FLAGS.prepared_root
    )
  with failures.user_errors():
    train.train_and_evaluate(
        config,
        data_dir,
        FLAGS.workdir,
        report=lambda line: print(line, flush=True),
        run_info=_run_info(),
    )


def _run_info() -> dict:
  """What config.json records beside the configuration."""
  return {
      "dataset": FLAGS.dataset,
      "preset": FLAGS.config or FLAGS.preset,
      "flags": config_flags.explicit_values(FLAGS),
  }


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with a `--help` that shows the values in effect."""
  rest = [arg for arg in argv[1:] if arg not in _HELP_ARGS]
  if len(rest) == len(argv) - 1:
    return app.parse_flags_with_usage(argv)
  app.parse_flags_with_usage([argv[0], *rest])
  print(
      config_flags.help_text(FLAGS, usage=__doc__, run_flags=RUN_FLAGS), end=""
  )
  sys.exit(0)


def run() -> None:
  """The `linrec-train` command."""
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
