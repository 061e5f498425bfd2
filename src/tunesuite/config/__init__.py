"""A run's configuration: its flags (fields), what the user typed (parse), defaults merged once (resolve), the
cached `--help` text, and the precision defaults of this machine."""
