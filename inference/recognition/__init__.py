"""Recognition on the regions a detector found: who a face is (faces.py)."""
