"""What a training run leaves in its workdir: the one list of its names.

  config.json         the full `TrainConfig` and the data it ran on
  metrics.jsonl       one JSON record per epoch (and per logged step)
  results.json        best epoch, its validation and test metrics
  console.log         every console line
  learning_curve.png  validation curves (with matplotlib)
  tensorboard/        TensorBoard events (with tensorboardX)
  checkpoints/<step>/ Orbax checkpoints, each with two items: `arrays` (the
                      train state) and `meta` (the JSON record)
  train.lock          held while a training runs (`training.workdir_lock`)

Training writes them, serving (`serving.restore`) and analysis
(`analysis.run_comparison`) read them; all take the names from here.
"""

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
CONSOLE_FILE = "console.log"
CURVE_FILE = "learning_curve.png"
TENSORBOARD_DIR = "tensorboard"
CHECKPOINTS_DIR = "checkpoints"
LOCK_FILE = "train.lock"
ARRAYS_ITEM = "arrays"
META_ITEM = "meta"
