"""One-time download of the official MovieLens-1M archive from GroupLens.

MovieLens terms forbid redistributing the data, so it is never shipped with
this project: a user downloads the official archive once into a cache
directory, and it is checked against the checksum GroupLens publishes.
"""

import hashlib
import os
import pathlib
import shutil
import tempfile
import urllib.error
import urllib.request

ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
# GroupLens publishes an md5 (not a sha256) for the archive, at
# ML1M_URL + ".md5". A downloaded file must match it; its sha256 is recorded
# in meta.json with every other input file.
ML1M_MD5 = "c4d9eecfca2ab87c1945afe126590906"
ML1M_FILE = "ml-1m.zip"
DEFAULT_CACHE_DIR = pathlib.Path("~/.cache/linrec_jax")
_TIMEOUT_S = 60
_COPY_BYTES = 1 << 20


class DownloadError(RuntimeError):
  """The download failed (offline) or gave an unexpected file.

  Attributes:
    reason: what went wrong, without advice (for callers that give their own).
  """

  def __init__(self, message: str, *, reason: str | None = None):
    super().__init__(message)
    self.reason = message if reason is None else reason


def fetch_ml1m(
    cache_dir: str | pathlib.Path = DEFAULT_CACHE_DIR,
    *,
    url: str | None = None,
    md5: str | None = None,
) -> pathlib.Path:
  """Returns the path of ml-1m.zip in cache_dir, downloading it if needed.

  Args:
    cache_dir: where the archive is kept between runs.
    url: where to get it (default ML1M_URL).
    md5: the checksum it must have (default ML1M_MD5).

  Raises:
    DownloadError: offline or a checksum mismatch; the message says to pass
      --input instead.
  """
  url = ML1M_URL if url is None else url
  md5 = ML1M_MD5 if md5 is None else md5
  cache_dir = pathlib.Path(cache_dir).expanduser()
  target = cache_dir / ML1M_FILE
  if target.is_file() and _md5(target) == md5:
    return target
  cache_dir.mkdir(parents=True, exist_ok=True)
  fd, tmp_name = tempfile.mkstemp(prefix=f".{ML1M_FILE}.", dir=cache_dir)
  tmp = pathlib.Path(tmp_name)
  try:
    with os.fdopen(fd, "wb") as out:
      try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
          shutil.copyfileobj(response, out, _COPY_BYTES)
      except (urllib.error.URLError, OSError, ValueError) as e:
        raise DownloadError(
            f"could not download {url} ({e}). This machine looks offline: "
            f"download {ML1M_FILE} (or its ratings.dat) yourself and pass "
            "--input=PATH",
            reason=f"{url}: {e}",
        ) from e
    found = _md5(tmp)
    if found != md5:
      raise DownloadError(
          f"{url} gave a file with md5 {found}, expected {md5}; not used. "
          f"Download {ML1M_FILE} yourself and pass --input=PATH",
          reason=f"{url} gave a file with md5 {found}, expected {md5}",
      )
    os.replace(tmp, target)
  finally:
    tmp.unlink(missing_ok=True)
  return target


def _md5(path: pathlib.Path) -> str:
  digest = hashlib.md5()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(_COPY_BYTES), b""):
      digest.update(block)
  return digest.hexdigest()
