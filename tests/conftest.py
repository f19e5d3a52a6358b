import os
import sys

# The harness package lives beside the tests.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
