"""matteralign: do scientific foundation models learn the same representation of matter?"""

__version__ = "0.1.0"
