"""Descriptions written from images: ``recsys items describe`` (see :mod:`recsys.describe.run`)."""

from recsys.describe.run import DescribeReport, describe_items
from recsys.describe.vocabulary import Vocabulary, load_vocabulary

__all__ = ["DescribeReport", "Vocabulary", "describe_items", "load_vocabulary"]
