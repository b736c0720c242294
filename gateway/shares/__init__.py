"""Share links: tokens, the store of record, lookup caching, access recording and the share API."""
