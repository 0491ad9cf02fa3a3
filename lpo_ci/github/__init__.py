"""Publishing a report on GitHub: the sticky pull-request comment, review
suggestions, the job summary and file annotations."""
