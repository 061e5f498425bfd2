"""The data side: loading splits (loading), their columns and labels (columns), image and audio decoding."""

from tunesuite.data.columns import (
           find_column,
           infer_problem_type,
           is_class_label,
           label_maps,
           label_names,
           manifest_dir,
           require_columns,
           values,
)
from tunesuite.data.loading import FILE_BUILDERS, load_raw, select_splits, split_source

__all__ = ["FILE_BUILDERS", "find_column", "infer_problem_type", "is_class_label", "label_maps", "label_names",
           "load_raw", "manifest_dir", "require_columns", "select_splits", "split_source",
           "values"]
