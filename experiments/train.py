r"""Trains and evaluates a sequential recommender; prints the test metrics.

  python -m experiments.train --dataset=ml-1m --model=sasrec \
      --attention=linrec --workdir=runs/ml1m_linrec

Rerunning the same command with the same --workdir resumes from the newest
intact checkpoint; a rerun with other values of flags that change the result
stops before any work (see `linrec_jax.run_binding.RESUMABLE_CHANGES` for
those that may change). `--preset=official` selects the paper's
configuration. Every error a user can cause ends as one line and exit 1.
"""

import sys

from absl import app
from absl import flags
from absl import logging
import jax

from experiments import config_flags
from experiments import datasets
from experiments import failures
from linrec_jax import checkpointing
from linrec_jax import sharding
from linrec_jax import train

flags.DEFINE_string("workdir", None, "checkpoints, logs and results go here")
flags.DEFINE_string("data_root", None, "raw datasets (default: "
                    "$LINREC_DATA_DIR, else ../shared/data)")
flags.DEFINE_string("prepared_root", "prepared", "prepared arrays are "
                    "cached here, one directory per dataset")
flags.DEFINE_string("coordinator_address", None, "multi-host: host:port of "
                    "process 0 (jax.distributed.initialize)")
flags.DEFINE_integer("num_processes", None, "multi-host: number of processes")
flags.DEFINE_integer("process_id", None, "multi-host: this process's index")
flags.mark_flag_as_required("workdir")
config_flags.define_flags()
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  failures.require_path("workdir", FLAGS.workdir)
  # Orbax logs the failures it raises, tracebacks included; they are
  # reported as one line.
  logging.set_verbosity(logging.FATAL)
  checkpointing.quiet_failed_read_noise()
  if FLAGS.coordinator_address:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                               FLAGS.process_id)
  with failures.user_errors():
    config = config_flags.config_from_flags()
    devices = sharding.select_devices(config.devices)
    sharding.check_divisible(config.batch_size, len(devices), "batch_size")
    sharding.check_divisible(config.eval_batch_size, len(devices),
                             "eval_batch_size")
    data_dir = datasets.prepared_dir(FLAGS.dataset, FLAGS.data_root,
                                     FLAGS.prepared_root)
  if jax.process_index() == 0:  # Several processes print every line once.
    print(f"dataset {FLAGS.dataset}: {data_dir}\nconfiguration (preset "
          f"{FLAGS.preset}, {len(devices)} x {devices[0].device_kind}):\n"
          f"{config.to_json()}", flush=True)
  with failures.user_errors():
    train.train_and_evaluate(config, data_dir, FLAGS.workdir,
                             report=lambda line: print(line, flush=True),
                             run_info={"dataset": FLAGS.dataset,
                                       "preset": FLAGS.preset})


if __name__ == "__main__":
  app.run(main)
