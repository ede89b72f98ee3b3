"""Moved to `linrec_jax.cli.config_flags`; kept so old imports work."""

from linrec_jax.cli.config_flags import config_from_flags  # pylint: disable=unused-import
from linrec_jax.cli.config_flags import dataset_key  # pylint: disable=unused-import
from linrec_jax.cli.config_flags import define_flags  # pylint: disable=unused-import
