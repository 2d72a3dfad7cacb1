/* Loop-heavy: count the primes below n by trial division (r1 unused, r2 = n). */
typedef unsigned int u32;
typedef unsigned long long u64;

u64 primes(void *unused, u64 n)
{
	u32 count = 0;
	for (u32 i = 2; i < (u32)n; i++) {
		u32 is_prime = 1;
		for (u32 d = 2; d * d <= i; d++) {
			if (i % d == 0) {
				is_prime = 0;
				break;
			}
		}
		count += is_prime;
	}
	return count;
}
