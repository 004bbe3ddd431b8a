"""Brain age: SFCN, its soft-label training, the linear bias correction and BAG selection."""
