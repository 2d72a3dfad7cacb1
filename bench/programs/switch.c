/* Branch-heavy: a pseudo-random 64-way switch, n rounds (r1 = seed, r2 = n).
 * Generated: every case does a different operation so clang keeps the compare tree. */
typedef unsigned long long u64;

u64 switcher(u64 seed, u64 n)
{
	u64 x = seed, acc = 0;
	for (u64 i = 0; i < n; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		switch ((x >> 33) & 63) {
		case 0:
			acc += x + 1;
			break;
		case 1:
			acc ^= x >> 2;
			break;
		case 2:
			acc = acc * 7 + 2;
			break;
		case 3:
			acc -= (x & 258) + 3;
			break;
		case 4:
			acc |= (u64)4 << 4;
			break;
		case 5:
			acc = (acc << 6) ^ 65;
			break;
		case 6:
			acc += acc >> 8;
			break;
		case 7:
			acc &= ~((u64)7 << 7);
			break;
		case 8:
			acc += x + 57;
			break;
		case 9:
			acc ^= x >> 10;
			break;
		case 10:
			acc = acc * 23 + 10;
			break;
		case 11:
			acc -= (x & 266) + 11;
			break;
		case 12:
			acc |= (u64)12 << 12;
			break;
		case 13:
			acc = (acc << 7) ^ 169;
			break;
		case 14:
			acc += acc >> 5;
			break;
		case 15:
			acc &= ~((u64)15 << 15);
			break;
		case 16:
			acc += x + 113;
			break;
		case 17:
			acc ^= x >> 18;
			break;
		case 18:
			acc = acc * 39 + 18;
			break;
		case 19:
			acc -= (x & 274) + 19;
			break;
		case 20:
			acc |= (u64)20 << 20;
			break;
		case 21:
			acc = (acc << 1) ^ 273;
			break;
		case 22:
			acc += acc >> 2;
			break;
		case 23:
			acc &= ~((u64)23 << 23);
			break;
		case 24:
			acc += x + 169;
			break;
		case 25:
			acc ^= x >> 26;
			break;
		case 26:
			acc = acc * 55 + 26;
			break;
		case 27:
			acc -= (x & 282) + 27;
			break;
		case 28:
			acc |= (u64)28 << 28;
			break;
		case 29:
			acc = (acc << 2) ^ 377;
			break;
		case 30:
			acc += acc >> 10;
			break;
		case 31:
			acc &= ~((u64)31 << 31);
			break;
		case 32:
			acc += x + 225;
			break;
		case 33:
			acc ^= x >> 5;
			break;
		case 34:
			acc = acc * 71 + 34;
			break;
		case 35:
			acc -= (x & 290) + 35;
			break;
		case 36:
			acc |= (u64)36 << 36;
			break;
		case 37:
			acc = (acc << 3) ^ 481;
			break;
		case 38:
			acc += acc >> 7;
			break;
		case 39:
			acc &= ~((u64)39 << 39);
			break;
		case 40:
			acc += x + 281;
			break;
		case 41:
			acc ^= x >> 13;
			break;
		case 42:
			acc = acc * 87 + 42;
			break;
		case 43:
			acc -= (x & 298) + 43;
			break;
		case 44:
			acc |= (u64)44 << 44;
			break;
		case 45:
			acc = (acc << 4) ^ 585;
			break;
		case 46:
			acc += acc >> 4;
			break;
		case 47:
			acc &= ~((u64)47 << 7);
			break;
		case 48:
			acc += x + 337;
			break;
		case 49:
			acc ^= x >> 21;
			break;
		case 50:
			acc = acc * 103 + 50;
			break;
		case 51:
			acc -= (x & 306) + 51;
			break;
		case 52:
			acc |= (u64)52 << 2;
			break;
		case 53:
			acc = (acc << 5) ^ 689;
			break;
		case 54:
			acc += acc >> 12;
			break;
		case 55:
			acc &= ~((u64)55 << 15);
			break;
		case 56:
			acc += x + 393;
			break;
		case 57:
			acc ^= x >> 29;
			break;
		case 58:
			acc = acc * 119 + 58;
			break;
		case 59:
			acc -= (x & 314) + 59;
			break;
		case 60:
			acc |= (u64)60 << 10;
			break;
		case 61:
			acc = (acc << 6) ^ 793;
			break;
		case 62:
			acc += acc >> 9;
			break;
		case 63:
			acc &= ~((u64)63 << 23);
			break;
		}
	}
	return acc;
}
