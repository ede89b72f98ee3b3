"""Prepared data: the file format, the sequences and their batches.

  prepared.py   the prepared directory's files: names, checksums, verified
                reading, fingerprint, `PreparedDataError` (`data_prep`
                writes with it)
  sequences.py  `load` into `Sequences`, the leave-one-out split
  batches.py    `TrainBatches` and `eval_batches`, fixed shapes, NumPy

The names below are the package's surface (`from linrec_jax import data;
data.load(...)`). Nothing here imports JAX or `data_prep`.
"""

from linrec_jax.data.batches import BUCKET_POOL
from linrec_jax.data.batches import cloze_batch
from linrec_jax.data.batches import cloze_mask
from linrec_jax.data.batches import default_max_predictions
from linrec_jax.data.batches import eval_batches
from linrec_jax.data.batches import expected_cloze_targets
from linrec_jax.data.batches import MODE_ALL
from linrec_jax.data.batches import MODE_CLOZE
from linrec_jax.data.batches import MODE_PREFIX
from linrec_jax.data.batches import MODES
from linrec_jax.data.batches import num_eval_batches
from linrec_jax.data.batches import PAD_LEFT
from linrec_jax.data.batches import PAD_RIGHT
from linrec_jax.data.batches import PAD_SIDES
from linrec_jax.data.batches import TrainBatches
from linrec_jax.data.prepared import fingerprint
from linrec_jax.data.prepared import FORMAT_VERSION
from linrec_jax.data.prepared import ITEM_IDS_FILE
from linrec_jax.data.prepared import META_FILE
from linrec_jax.data.prepared import MIN_INTERACTIONS
from linrec_jax.data.prepared import MissingPreparedDataError
from linrec_jax.data.prepared import PreparedDataError
from linrec_jax.data.prepared import REQUIRED_FILES
from linrec_jax.data.prepared import SEQUENCES_FILE
from linrec_jax.data.prepared import USER_IDS_FILE
from linrec_jax.data.sequences import history_end
from linrec_jax.data.sequences import leave_one_out
from linrec_jax.data.sequences import LeaveOneOut
from linrec_jax.data.sequences import load
from linrec_jax.data.sequences import Sequences
from linrec_jax.data.sequences import TEST
from linrec_jax.data.sequences import VALID
