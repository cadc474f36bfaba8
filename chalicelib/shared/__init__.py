"""What the face endpoint's image shares with the API: image decoding in an isolated child process,
the media types, face boxes and cohort score normalisation. It imports nothing else of ours, so the
image copies this package and ``chalicelib/__init__.py`` only."""
