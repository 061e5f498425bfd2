"""Offline demos and the corpora they build (Debian fortunes, scikit-learn digits, espeak-ng speech)."""
