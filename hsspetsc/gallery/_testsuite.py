TESTSUITE_NAMES = ()
def cache_dir(): pass
def testsuite(name, N, seed=0): raise NotImplementedError
