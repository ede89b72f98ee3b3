"""One sentence per `TrainConfig` field: the help text of its flag.

A field added to `TrainConfig` becomes a flag (`--name` and
`--config.name`) by itself; its sentence goes here (a test checks that every
field has one).
"""

FIELD_HELP = {
    # Model.
    "model": "The recommender: sasrec (next-item Transformer) or bert4rec "
    "(bidirectional, trained on masked items).",
    "attention": "The attention of every layer: softmax, linrec (the "
    "paper's L2-normalised linear attention) or one of the "
    "baselines and ablations listed in choices.",
    "causal": "Each position attends only to earlier items (SASRec); "
    "--nocausal makes the encoder bidirectional.",
    "mask_padding": "Keep padded positions out of attention; "
    "--nomask_padding runs LinRec unmasked, as the authors "
    "do.",
    "max_len": "Items of history the model sees (older items are cut).",
    "hidden": "Width of the item embeddings and of every layer.",
    "layers": "Number of Transformer blocks stacked in the encoder.",
    "heads": "Attention heads per block; they must divide --hidden.",
    "ffn": "Inner width of each block's feed-forward network.",
    "dropout": "Dropout rate on embeddings, attention outputs and "
    "feed-forward layers during training.",
    "attention_dropout": "Dropout on the attention weights (RecBole's "
    "attn_dropout_prob; softmax variants only).",
    "activation": "The feed-forward activation: gelu (exact erf GELU, as "
    "RecBole and the official LinRec code), gelu_tanh, relu or swish.",
    "ln_eps": "Epsilon of every LayerNorm (1e-12, RecBole's value).",
    "pre_ln": "Layer norm before each sub-layer (pre-LN) instead of after "
    "it (the original post-LN).",
    # Data and objective.
    "train_mode": "Training examples: all (the next item at every "
    "position), prefix (each prefix predicts its next item, "
    "the official setup) or cloze (BERT4Rec's masked items).",
    "windows_per_user": "Training windows of --max_len items cut from each "
    "history per epoch in mode all (0: every window).",
    "window_stride": "Items between the ends of successive training windows "
    "in mode all (0: --max_len, no overlap); below "
    "--max_len each target is trained once, in the window "
    "where it sees at least --max_len minus this many "
    "preceding items.",
    "length_bucket": "Group training rows of similar length and crop each "
    "batch to a multiple of this many positions (0: pad "
    "every batch to --max_len); right padding only.",
    "pad_side": "Where short histories are padded: right or left.",
    "mask_prob": "Share of items replaced by the mask token in cloze "
    "training.",
    "max_predictions": "Masked positions scored per window in cloze "
    "training (0: RecBole's int(mask_prob * max_len)).",
    "mask_last_prob": "Share of cloze windows that mask only their last "
    "item (BERT4Rec's fine-tuning samples).",
    "loss": "Training loss: ce (softmax cross-entropy over all items) or "
    "sampled (softmax over the target and --num_negatives uniform "
    "negatives).",
    "num_negatives": "Uniform negatives per example for --loss=sampled.",
    "loss_normalizer": "What a step's loss sum is divided by: batch (its "
    "own targets: every batch weighs the same) or epoch (the mean targets "
    "per batch of an epoch, in cloze training their expectation: every "
    "target weighs the same in every batch, the objective of padded "
    "batches also under --length_bucket, whose batches of short rows hold "
    "few targets).",
    # Optimisation.
    "batch_size": "Training examples per optimiser step, over all devices "
    "and hosts.",
    "microbatches": "Accumulate each device's batch in this many chunks: "
    "the same update with one chunk's activations in "
    "memory.",
    "lr": "Peak learning rate of Adam (AdamW when --weight_decay > 0).",
    "lr_schedule": "Learning rate after the warm-up: constant, cosine or "
    "linear decay to zero at the last step.",
    "warmup_steps": "Steps of linear warm-up from 0 to --lr.",
    "weight_decay": "Decoupled weight decay (AdamW); 0 uses plain Adam.",
    "grad_clip": "Clip the gradient to this global norm (0: no clipping).",
    "epochs": "Most passes over the training examples.",
    "max_steps": "Stop after this many optimiser steps (0: --epochs "
    "decides).",
    "time_limit_minutes": "End training at the first epoch end after this "
    "many minutes of this process, then test the best "
    "parameters (0: no limit).",
    "patience": "Stop after this many evaluations without a better "
    "validation NDCG@10.",
    "seed": "Seed of initialisation, batch order, dropout and sampled "
    "negatives.",
    # Evaluation.
    "eval_protocol": "Ranking at evaluation: full (the target against all "
    "items), uni100 or pop100 (against 100 uniform or "
    "popularity-sampled negatives).",
    "exclude_history": "Select the best epoch by NDCG@10 with the user's "
    "history excluded from the ranking (both protocols "
    "are always reported).",
    "eval_batch_size": "Users scored per evaluation batch, over all "
    "devices.",
    "eval_every_epochs": "Evaluate on the validation items every this many "
    "epochs (and after the last).",
    # Devices, logging and checkpoints.
    "parallel": "Data parallelism: mesh (jit over a device mesh) or pmap.",
    "devices": "Use the first N devices (0: all).",
    "log_every_steps": "Write a progress line (and a TensorBoard point) "
    "every this many steps.",
    "checkpoint_every_steps": "Save a checkpoint every this many steps, "
    "besides the one at each epoch end.",
    "keep_checkpoints": "Checkpoints kept in workdir/checkpoints (the "
    "newest ones).",
}
