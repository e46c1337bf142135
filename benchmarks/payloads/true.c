/* true: the cheapest possible job, exits 0 at once (spawn throughput baseline payload). */
int main(void) { return 0; }
