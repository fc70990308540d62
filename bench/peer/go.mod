module example.com/regd/bench/peer

go 1.19
