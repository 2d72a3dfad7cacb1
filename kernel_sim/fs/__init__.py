"""Files in kernel_sim: the File abstraction, wait queues, eventfd, epoll and the pseudo filesystems."""
