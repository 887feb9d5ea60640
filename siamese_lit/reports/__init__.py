"""Reading run folders back (sweep dirs, job files) with bounded readers, for summarize and results."""
