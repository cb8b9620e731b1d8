"""sipflows: keeps SIP (samordnad individuell plan) work from falling through the cracks."""

__version__ = "0.1.0"
