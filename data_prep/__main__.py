"""`python -m data_prep ...` runs `python -m data_prep.prepare ...`."""

from data_prep import prepare

if __name__ == "__main__":
  prepare.run()
