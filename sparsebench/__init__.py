"""sparsebench: what does an efficient representation buy in quality, and what does it cost?"""

__version__ = "0.1.0"
