"""Named ids shared by the data pipeline and the models."""

# Item id 0 is padding everywhere: in prepared arrays, batches and embedding tables.
PAD_ID = 0
